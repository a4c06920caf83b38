function a() {
  console.log('a');
}
function b() {
  if (x) {
    for (;;) {
      console.log('deep');
    }
  }
}
function c() {
  console.error('no');
}
