class A {
  count = 0;
  name = 'a';
  method() {
    return this.count;
  }
}
