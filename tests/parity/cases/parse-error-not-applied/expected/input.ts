let a = 1
function f() {
  var b = (2;
}
