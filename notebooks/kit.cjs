// The notebooks' one helper: loads the kit's TypeScript modules and ESM-only packages with real
// ESM import() through tsx's loader, exactly as scripts run them (tslab would otherwise turn
// import() into require() and compile lib/ itself). Cells stay thin: `const kit = await lib('lib/tracks/index.ts')`.
const path = require('node:path');
const { pathToFileURL } = require('node:url');

// Built at run time so that no transpiler rewrites it into require().
const importESM = new Function('specifier', 'return import(specifier)');
const root = path.resolve(__dirname, '..');
let ready = null;

/** Registers tsx's ESM loader once (harmless when the process already runs under tsx). */
function tsx() {
  ready ??= importESM('tsx/esm/api').then((m) => m.register());
  return ready;
}

/** A module of the repository by its path from the repository root, e.g. 'lib/tracks/index.ts'. */
async function lib(rel) {
  await tsx();
  return importESM(pathToFileURL(path.join(root, rel)).href);
}

/** An installed package (ESM or CommonJS) by name, e.g. 'arquero'. */
async function pkg(name) {
  await tsx();
  return importESM(name);
}

module.exports = { lib, pkg, root };
