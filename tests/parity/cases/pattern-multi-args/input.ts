track();
track('event');
track('event', { a: 1 }, user.id);
const t = track(
  'multi',
  2,
);
