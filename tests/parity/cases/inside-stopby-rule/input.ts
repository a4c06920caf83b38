class A {
  v = 1;
  m() {
    return this.v;
  }
  n() {
    return function () {
      return this.v;
    };
  }
  o = () => this.v;
}
