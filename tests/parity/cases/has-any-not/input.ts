function a(code: string) {
  return eval(code);
}
function b(code: string) {
  // trusted input only
  return eval(code);
}
function c(body: string) {
  return new Function(body);
}
function d() {
  return 1;
}
