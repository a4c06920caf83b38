console.log(1);
function f() {
  console.log(2);
  if (x) {
      console.log(3);
  }
}
