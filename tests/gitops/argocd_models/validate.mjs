// Validate Argo CD objects with @kubernetes-models/argo-cd, whose validators
// are generated from Argo CD's Go API types (github.com/argoproj/argo-cd/v3).
// Reads a JSON array of objects on stdin and writes a JSON array with one
// list of error messages per object ([] when the object is valid).
import { readFileSync } from "node:fs";
import { Application } from "@kubernetes-models/argo-cd/argoproj.io/v1alpha1/Application";
import { AppProject } from "@kubernetes-models/argo-cd/argoproj.io/v1alpha1/AppProject";

const MODELS = { Application, AppProject };

function errorsOf(object) {
  const Model = MODELS[object.kind];
  if (Model === undefined) {
    return [`no Argo CD model for kind ${object.kind}`];
  }
  try {
    new Model(object).validate();
    return [];
  } catch (error) {
    if (Array.isArray(error.errors)) {
      return error.errors.map((item) => `${item.instancePath || "/"}: ${item.message}`);
    }
    return [String(error.message || error)];
  }
}

const objects = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(objects.map(errorsOf)));
