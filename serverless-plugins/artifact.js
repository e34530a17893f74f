'use strict';

// Local plugin: finishes the deployment zip that `osls package` (and `deploy`) builds.
// Listed after serverless-python-requirements in serverless.yml, so its hooks run after that
// plugin has injected the dependencies into the zip.
//  - compiles every .py in the zip to bytecode for the runtime's Python (scripts/compile_artifact.py:
//    why, and why `unchecked-hash`);
//  - warns when DATABASE_URL is exported: it is deliberately not deployed (see docs/deploy.md).

const { execFile } = require('child_process');
const path = require('path');
const { promisify } = require('util');

const execFileAsync = promisify(execFile);
const COMPILER = path.join(__dirname, '..', 'scripts', 'compile_artifact.py');

class ArtifactPlugin {
  constructor(serverless, cliOptions, { log }) {
    this.serverless = serverless;
    this.log = log;
    this.prebuilt = new Set();
    this.hooks = {
      'before:package:createDeploymentArtifacts': () => this.beforePackage(),
      'after:package:createDeploymentArtifacts': () => this.compileNewArtifacts(),
      'before:deploy:function:packageFunction': () => this.beforePackage(),
      'after:deploy:function:packageFunction': () => this.compileNewArtifacts(),
    };
  }

  beforePackage() {
    if (process.env.DATABASE_URL) {
      this.log.warning(
        'DATABASE_URL from the shell is not deployed (it would write the password into the ' +
          'CloudFormation template); deploy with the databaseSecretArn or databaseUrlSsmParameter ' +
          'param instead (docs/deploy.md).'
      );
    }
    // A `package.artifact` given in serverless.yml is a zip built elsewhere: leave it alone.
    this.prebuilt = new Set(this.artifactPaths());
  }

  artifactPaths() {
    const { service, serviceDir } = this.serverless;
    const configs = [
      service.package,
      ...service.getAllFunctions().map((name) => service.getFunction(name).package),
    ];
    return configs
      .filter((config) => config && config.artifact && !config.artifact.startsWith('s3://'))
      .map((config) => path.resolve(serviceDir, config.artifact));
  }

  async compileNewArtifacts() {
    const runtime = this.serverless.service.provider.runtime;
    const built = new Set(this.artifactPaths().filter((artifact) => !this.prebuilt.has(artifact)));
    for (const artifact of built) {
      // The runtime's name is its interpreter's name (python3.13): only that Python may write
      // bytecode for it, and the script refuses any other.
      try {
        const { stdout } = await execFileAsync(runtime, [COMPILER, artifact, '--runtime', runtime]);
        this.log.info(stdout.trim());
      } catch (error) {
        throw new this.serverless.classes.Error(
          `Could not compile ${artifact} to bytecode with ${runtime} from PATH: ` +
            `${(error.stderr || error.message).trim()}`,
          'USERS_API_BYTECODE_FAILED'
        );
      }
    }
  }
}

module.exports = ArtifactPlugin;
