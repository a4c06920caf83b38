const cfg = {
  user: 'a',
  secret: 'b',
};
const other = { user: 'c' };
const nested = { inner: { secretKey: 1 } };
