function f() {
  wrap({
    a: 1,
    b: 2,
  });
}
wrap(x);
