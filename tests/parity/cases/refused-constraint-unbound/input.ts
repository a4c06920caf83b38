const x = f(1);
