// placeholder entry; the diag CLI is built in issue 4
console.error('diag: not built yet');
process.exit(2);
