// Hardhat 2 compiling fully offline with the npm `solc` package (solc-js).
// Hardhat normally downloads a native compiler; that cannot work here, so the subtask that
// picks a compiler build is overridden to return the local soljson.js when the requested
// version is the installed solc package's version. Any other version fails loudly instead of
// trying the network.
const path = require("path");
const { subtask } = require("hardhat/config");
const { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } = require("hardhat/builtin-tasks/task-names");

const SOLC_VERSION = require("solc/package.json").version; // pinned in package.json

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args, hre, runSuper) => {
  if (args.solcVersion !== SOLC_VERSION) {
    throw new Error(
      `solc ${args.solcVersion} requested but only the local solc-js ${SOLC_VERSION} is available offline`,
    );
  }
  const solc = require("solc");
  return {
    compilerPath: path.join(path.dirname(require.resolve("solc/package.json")), "soljson.js"),
    isSolcJs: true,
    version: SOLC_VERSION,
    longVersion: solc.version(),
  };
});

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      optimizer: { enabled: true, runs: 10000 },
      evmVersion: "cancun",
    },
  },
  paths: {
    sources: "./contracts",
    artifacts: "./artifacts",
    cache: "./cache",
  },
  networks: {
    hardhat: { chainId: 31337 },
    localhost: { url: process.env.AUTOPOOL_RPC_URL || "http://127.0.0.1:8545" },
  },
};
