class C {
  m(x: number) {
    if (x > 0) {
      step1();
      step2();
    }
  }
}
