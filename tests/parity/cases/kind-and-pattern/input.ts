const a = 1;
const B = 2;
let c = 3;
const d = 4, e = 5;
