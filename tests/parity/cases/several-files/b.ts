function f() {
  var z = 3;
}
