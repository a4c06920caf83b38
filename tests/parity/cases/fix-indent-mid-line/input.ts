class C {
  m() {
    const v = make(1);
    return [make(2), make(3)];
  }
}
