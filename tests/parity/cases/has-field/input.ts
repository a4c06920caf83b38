fetch(url);
fetcher(url);
window.fetch(url);
go(fetch);
