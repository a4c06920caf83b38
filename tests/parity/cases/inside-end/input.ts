async function f(items: string[]) {
  await start();
  for (const item of items) {
    await handle(item);
    if (item) {
      const r = await check(item);
    }
  }
}
