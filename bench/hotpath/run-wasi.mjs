// Runs a wasm32-wasip1 command module under Node's WASI (V8, as in Envoy's release build).
// usage: node run-wasi.mjs program.wasm [args...]
//
// The program links the mtls-guard library, whose proxy-wasm exports and `env` imports
// (the proxy ABI) survive in the module although the program never calls them: the
// imports get stubs that fail loudly, and the library's `_initialize` export is hidden
// because WASI refuses a command module that also looks like a reactor.
import { readFile } from 'node:fs/promises';
import { argv, exit } from 'node:process';
import { WASI } from 'node:wasi';

const [file, ...args] = argv.slice(2);
const wasi = new WASI({ version: 'preview1', args: [file, ...args], env: {}, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(file));
const env = {};
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module === 'env' && imp.kind === 'function') {
    env[imp.name] = () => {
      throw new Error(`proxy ABI call ${imp.name} outside a proxy`);
    };
  }
}
const instance = await WebAssembly.instantiate(module, { ...wasi.getImportObject(), env });
const { _initialize, ...exports } = instance.exports;
exit(wasi.start({ exports }) ?? 0);
