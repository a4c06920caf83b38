if (ready && !failed(count)) {
  run(task);
}
while (busy) {}
