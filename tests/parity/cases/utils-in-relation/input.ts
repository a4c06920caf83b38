async function f(xs: string[]) {
  for (const x of xs) {
    await go(x);
  }
  for (const y of xs) {
    sync(y);
  }
}
