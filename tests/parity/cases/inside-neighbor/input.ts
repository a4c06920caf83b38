async function f() {
  await a();
  const x = await b();
  for (const y of z) {
    await c(y);
  }
  return await d();
}
