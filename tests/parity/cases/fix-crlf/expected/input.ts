function f() {
  if (DEBUG) {
    console.log(1);
  };
}
if (DEBUG) {
  console.log(2);
};
