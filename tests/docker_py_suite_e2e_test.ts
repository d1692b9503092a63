/**
 * docker-py's own exec tests (its `tests/integration/api_exec_test.py`), the build and tag
 * tests the gate refused before (a build on a named network, also for isolated roles, a
 * Dockerfile from outside the context, `tag?force=0`), its context tests (which shared one
 * context store across runs) and the attach test docker-py itself fails direct, through a wide
 * no-escape gate and the same role with isolate on, against a real dockerd of every engine the
 * harness has: no outcome differs from a direct run on the daemon's socket except as
 * tests/docker_py_forbidden*.json explain (scripts/docker_py_suite.ts, a fixed subset; the whole
 * suite is that script's job). Skips loudly when docker-py's source or pytest is missing.
 *
 * @module
 */

import { join } from "node:path";
import { DENO, ROOT } from "./helpers/gate.ts";
import { availableEngines, dockerdUnavailable } from "./helpers/dockerd.ts";
import { DOCKER_PY_REPO } from "../scripts/docker_py_suite.ts";

function missing(): string | undefined {
  try {
    Deno.statSync(DOCKER_PY_REPO);
  } catch {
    return `docker-py's source (${DOCKER_PY_REPO})`;
  }
  const py = new Deno.Command("/usr/bin/python3", {
    args: ["-c", "import pytest, pytest_timeout, paramiko, docker"],
    stdout: "null",
    stderr: "null",
  }).outputSync();
  return py.code === 0 ? undefined : "python3-pytest, python3-pytest-timeout or python3-paramiko";
}

const why = missing();
if (why) {
  console.error(`\n${"!".repeat(78)}\nSKIP: docker-py suite: no ${why}\n${"!".repeat(78)}\n`);
}

/** The fixed subset CI runs (paths in docker-py's checkout). */
const SUBSET = [
  "tests/integration/api_exec_test.py",
  // Refused by the gate before route_params learnt dockerd's reading of them (the network
  // build also for isolated roles, before the isolation step's owner check was let through).
  "tests/integration/api_build_test.py::BuildTest::test_build_with_network_mode",
  "tests/integration/api_build_test.py::BuildTest::test_build_out_of_context_dockerfile",
  "tests/integration/models_images_test.py::ImageCollectionTest::test_save_and_load_repo_name",
  // One context store for both runs failed the second run's context tests.
  "tests/integration/context_api_test.py",
  // docker-py loses the frame that came with dockerd's 101 head: fails direct, a listed
  // direct-side failure.
  "tests/integration/api_container_test.py::AttachContainerTest::test_attach_no_stream",
];

/**
 * On engines after the first, a smaller subset keeps CI's time (each run starts a dockerd and
 * pytest): a few exec tests, the build and tag tests, the context and attach tests.
 */
const SMALL_SUBSET = [
  "tests/integration/api_exec_test.py::ExecTest::test_execute_command",
  "tests/integration/api_exec_test.py::ExecTest::test_exec_command_string",
  "tests/integration/api_exec_test.py::ExecTest::test_exec_start_socket",
  "tests/integration/api_exec_test.py::ExecTest::test_exec_inspect",
  ...SUBSET.slice(1),
];

for (const [i, engine] of availableEngines().entries()) {
  Deno.test({
    name: `docker-py's exec, build, tag and context tests (Docker ${engine}): the same outcomes ` +
      "through a wide no-escape gate and with isolate on as direct",
    ignore: dockerdUnavailable() || why !== undefined,
    async fn() {
      const out = await new Deno.Command(DENO, {
        args: [
          "run",
          "-A",
          join(ROOT, "scripts", "docker_py_suite.ts"),
          "--engine",
          engine,
          "--role",
          "no-escape,isolate",
          "--timeout",
          "60",
          ...(i === 0 ? SUBSET : SMALL_SUBSET),
        ],
        stdin: "null",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      const log = new TextDecoder().decode(out.stderr);
      if (out.code !== 0) throw new Error(`differences (exit ${out.code}):\n${text}\n${log}`);
      for (const role of ["no-escape", "isolate"]) {
        const passed = text.match(new RegExp(`^gate \\(${role}\\): +(\\d+) passed`, "m"));
        // A run that passes nothing proves nothing (an image or a daemon that did not start).
        if (!passed || Number(passed[1]) < (i === 0 ? 21 : 9)) {
          throw new Error(`${role}: too few passed:\n${text}\n${log}`);
        }
      }
    },
  });
}
