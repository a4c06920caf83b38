wrap(
      `a
  b

        c`);
class K {
  m() {
    wrap(
        [
          1,
      2,
        ]);
  }
}
