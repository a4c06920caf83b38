function f() {
	console.log(1);
	if (x) {
		console.log(2);
	}
}
