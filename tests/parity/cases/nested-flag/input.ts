wrap(wrap(wrap(1)));
wrap([wrap(2), wrap(3)]);
