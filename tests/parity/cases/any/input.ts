var a = 1;
let b = 2;
const c = 3;
var d;
