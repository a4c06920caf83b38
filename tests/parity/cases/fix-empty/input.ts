// TODO: remove
const a = 1; // TODO later
/* keep */
const b = 2;
