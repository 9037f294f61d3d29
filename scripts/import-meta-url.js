// Injected into the CommonJS bundle (scripts/bundle.mjs): what `import.meta.url` meant in the
// ES modules it was made from, the bundle's own file.
export const import_meta_url = require('node:url').pathToFileURL(__filename).href;
