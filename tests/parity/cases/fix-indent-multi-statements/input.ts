async function load() {
  try {
    const r = await fetch(url);
    if (!r.ok) {
      throw new Error('bad');
    }
  } catch (err) {
    console.error(err);
    return null;
  }
}
