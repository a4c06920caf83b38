wrap(a(
  1,
    2));
function f() {
  wrap(b(
    3,
      4));
}
