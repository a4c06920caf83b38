function f() {
  debugger;
  return 1;
}
