if (a == b) {}
if (a == a) {}
const x = f(1) == g(2);
const y = a === b;
