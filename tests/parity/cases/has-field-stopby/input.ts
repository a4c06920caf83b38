create({ model: 'a', temperature: 1 });
const o = { model: 'b' };
create({ nested: { model: 'c' } });
create({ value: 'model' });
