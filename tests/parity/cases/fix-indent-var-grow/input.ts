wrap(`a
  b

        c`);
function f() {
  wrap({
    k: 1,

    j: [
      2,
    ],
  });
}
