function add(a: number, b: number) {
  const s = a + b;
  return s;
}

class K {
  m() {
    function inner() {
      return 1;
    }
  }
}
