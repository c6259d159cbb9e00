// Builds the two pages into web/dist (git-ignored; `make compile` runs this through
// `npm run web:build`): /app and /admin, each an index.html, its bundled main.js and the
// stylesheet. Everything comes from node_modules at build time: nothing from a CDN.
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const web = dirname(fileURLToPath(import.meta.url));
const dist = join(web, "dist");
await rm(dist, { recursive: true, force: true });
for (const page of ["app", "admin"]) {
  const out = join(dist, page);
  await mkdir(out, { recursive: true });
  await build({
    entryPoints: [join(web, "src", `${page}.ts`)],
    outfile: join(out, "main.js"),
    bundle: true,
    format: "esm",
    target: "es2022",
    minify: true,
    sourcemap: "linked",
    legalComments: "none",
    logLevel: "warning",
  });
  await copyFile(join(web, "pages", `${page}.html`), join(out, "index.html"));
  await copyFile(join(web, "pages", "style.css"), join(out, "style.css"));
}
console.log(`pages built in ${dist}`);
