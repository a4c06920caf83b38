const a = b;
let c = d, e = f;
const g = h(i);
