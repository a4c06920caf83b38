if (and(a, and(b, c), d)) {}
const v = and(x);
