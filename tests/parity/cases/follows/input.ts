function a() {
  const v = 1;
  return v;
}
function b() {
  const v = 1;
  log(v);
  return v;
}
