wrap(inner(1));
inner(2);
wrap(3);
