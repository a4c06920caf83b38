const maxRetryCount = 3;
const apiBaseURL = 'x';
const simple = 1;
