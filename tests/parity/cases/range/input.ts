const a = 1;
const é = foo(bar);
const bar = 2;
