fetch('http://example.com');
fetch("http://example.org/a");
fetch('https://secure.example.com');
const s = 'see http://x';
