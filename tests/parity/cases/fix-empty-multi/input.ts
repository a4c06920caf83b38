call();
call(1);
call(
  a,
  b
);
