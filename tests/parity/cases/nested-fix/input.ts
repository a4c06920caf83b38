old(old(1));
old([old(2), old(3)]);
old(4);
