import assert from "node:assert/strict";
import { symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathExists } from "../src/util/fs_util.ts";

Deno.test("pathExists: present, absent, dangling symlink, and errors that are not 'absent'", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dg-exists-" });
  try {
    const file = join(dir, "f");
    await writeFile(file, "x");
    assert.equal(await pathExists(file), true);
    assert.equal(await pathExists(join(dir, "missing")), false);
    // A parent that is a file: nothing can be there.
    assert.equal(await pathExists(join(file, "child")), false);
    // A dangling symlink: absent when followed, present to a writer that must not clobber it.
    const dangling = join(dir, "dangling");
    await symlink(join(dir, "nowhere"), dangling);
    assert.equal(await pathExists(dangling), false);
    assert.equal(await pathExists(dangling, { follow: false }), true);
    // A symlink loop is an error, not "absent", and the message names the path.
    const loop = join(dir, "loop");
    await symlink(loop, loop);
    await assert.rejects(pathExists(loop, { what: "CRL" }), (err: Error) => {
      assert.match(err.message, /^Cannot access CRL ".*loop": /);
      assert.doesNotMatch(err.message, /, stat '/);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
