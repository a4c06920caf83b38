function a() {
  first();
  second();
  return 1;
}
function b() {
  only();
}
