p.then(f);
p.then(f).catch(g);
then(f);
obj.method(x);
