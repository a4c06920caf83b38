function a() {
  return 1;
}
function b() {
  const g = () => {
    return 2;
  };
}
function c() {
  if (x) {
    return 3;
  }
}
