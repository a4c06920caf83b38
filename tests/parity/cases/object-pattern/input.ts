create({ name: 'a', model: 'x', temperature: 1 });
create({ model: 'y' });
create({ name: 'b', model: 'z' });
