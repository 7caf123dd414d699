import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  addEntity,
  defaultServedName,
  emptyEntity,
  emptyForm,
  EndpointForm,
  fieldOfServerError,
  fromEndpoint,
  removeEntity,
  sortVersions,
  toConfig,
  toCreateRequest,
  validate
} from '../src/form';
import type { Endpoint } from '../src/types';

function twoEntityForm(): EndpointForm {
  return {
    name: 'iris',
    entities: [
      { ...emptyEntity(70), model: 'iris-lr', version: '1' },
      {
        ...emptyEntity(30),
        model: 'iris-lr',
        version: '2',
        name: 'challenger',
        workloadType: 'GPU_SMALL',
        workloadSize: 'Medium',
        scaleToZero: true,
        envVars: [
          { key: 'MODE', value: 'fast' },
          { key: ' ', value: '' }
        ]
      }
    ],
    inferenceTable: {
      enabled: true,
      catalog: 'main',
      schema: 'default',
      prefix: '',
      configured: false
    }
  };
}

describe('toCreateRequest', () => {
  it('builds the Databricks create body with explicit names and routes', () => {
    assert.deepEqual(toCreateRequest(twoEntityForm()), {
      name: 'iris',
      config: {
        served_entities: [
          {
            name: 'iris-lr-1',
            entity_name: 'iris-lr',
            entity_version: '1',
            workload_type: 'CPU',
            workload_size: 'Small',
            scale_to_zero_enabled: false
          },
          {
            name: 'challenger',
            entity_name: 'iris-lr',
            entity_version: '2',
            workload_type: 'GPU_SMALL',
            workload_size: 'Medium',
            scale_to_zero_enabled: true,
            environment_vars: { MODE: 'fast' }
          }
        ],
        traffic_config: {
          routes: [
            { served_model_name: 'iris-lr-1', traffic_percentage: 70 },
            { served_model_name: 'challenger', traffic_percentage: 30 }
          ]
        },
        auto_capture_config: { enabled: true, catalog_name: 'main', schema_name: 'default' }
      }
    });
  });

  it('trims the name and omits an unconfigured inference table', () => {
    const form = { ...emptyForm(), name: ' ep ' };
    form.entities[0] = { ...form.entities[0], model: 'm', version: '3' };
    const request = toCreateRequest(form);
    assert.equal(request.name, 'ep');
    assert.equal(request.config.auto_capture_config, undefined);
  });

  it('omits the version of a models:/ URI and the size of a custom concurrency range', () => {
    const form = emptyForm();
    form.entities[0] = {
      ...form.entities[0],
      model: 'models:/m@champion',
      version: '',
      workloadSize: ''
    };
    const entity = toConfig(form).served_entities[0];
    assert.equal('entity_version' in entity, false);
    assert.equal('workload_size' in entity, false);
  });
});

describe('defaultServedName', () => {
  it('matches the server: last dotted segment plus version, sanitised', () => {
    assert.equal(defaultServedName('iris-lr', '2'), 'iris-lr-2');
    assert.equal(defaultServedName('main.default.ads', '3'), 'ads-3');
    assert.equal(defaultServedName('my model', ''), 'my-model');
  });
});

describe('addEntity / removeEntity', () => {
  it('re-splits traffic evenly', () => {
    const two = addEntity(emptyForm());
    assert.deepEqual(
      two.entities.map(e => e.traffic),
      [50, 50]
    );
    const three = addEntity(two);
    assert.deepEqual(
      three.entities.map(e => e.traffic),
      [34, 33, 33]
    );
    assert.deepEqual(
      removeEntity(three, 0).entities.map(e => e.traffic),
      [50, 50]
    );
  });
});

describe('validate', () => {
  it('accepts a complete form', () => {
    assert.deepEqual(validate(twoEntityForm()), {});
  });

  it('reports missing name, model and version at their fields', () => {
    const form = addEntity(emptyForm());
    form.entities[1] = { ...form.entities[1], model: 'iris-lr' };
    assert.deepEqual(validate(form), {
      name: 'Enter a name for the endpoint.',
      'entities.0.model': 'Select a model.',
      'entities.1.version': 'Select a model version.'
    });
  });

  it('rejects a split that does not sum to 100', () => {
    const form = twoEntityForm();
    form.entities[0].traffic = 50;
    assert.match(validate(form).traffic, /sum to 80/);
  });

  it('rejects duplicate served names and nameless variables', () => {
    const form = twoEntityForm();
    form.entities[1] = {
      ...form.entities[1],
      name: 'iris-lr-1',
      envVars: [{ key: '', value: 'x' }]
    };
    const errors = validate(form);
    assert.match(errors['entities.1.name'], /already used/);
    assert.match(errors['entities.1.envVars'], /needs a name/);
  });
});

describe('fromEndpoint', () => {
  const endpoint: Endpoint = {
    name: 'ep',
    state: { ready: 'READY', config_update: 'NOT_UPDATING' },
    config: {
      config_version: 2,
      served_entities: [
        {
          name: 'a',
          entity_name: 'iris-lr',
          entity_version: '1',
          workload_size: 'Small',
          workload_type: 'CPU',
          scale_to_zero_enabled: true,
          environment_vars: { K: 'v' },
          state: { deployment: 'DEPLOYMENT_READY' },
          creator: 'me',
          local: { replicas: 1 },
          instance_profile_arn: 'kept'
        },
        { name: 'b', entity_name: 'iris-lr', entity_version: '2' }
      ],
      traffic_config: {
        routes: [
          { served_model_name: 'a', traffic_percentage: 90 },
          { served_model_name: 'b', traffic_percentage: 10 }
        ]
      },
      auto_capture_config: {
        catalog_name: 'c',
        schema_name: 's',
        table_name_prefix: 'p',
        enabled: true,
        state: {}
      }
    }
  };

  it('round-trips through toConfig, dropping output-only fields and keeping unknown ones', () => {
    const form = fromEndpoint(endpoint);
    assert.deepEqual(
      form.entities.map(e => e.traffic),
      [90, 10]
    );
    const config = toConfig(form);
    assert.deepEqual(config.served_entities[0], {
      instance_profile_arn: 'kept',
      name: 'a',
      entity_name: 'iris-lr',
      entity_version: '1',
      workload_type: 'CPU',
      workload_size: 'Small',
      scale_to_zero_enabled: true,
      environment_vars: { K: 'v' }
    });
    assert.deepEqual(config.auto_capture_config, {
      enabled: true,
      catalog_name: 'c',
      schema_name: 's',
      table_name_prefix: 'p'
    });
  });

  it('sends enabled: false when a configured table is switched off', () => {
    const form = fromEndpoint(endpoint);
    form.inferenceTable.enabled = false;
    assert.equal(toConfig(form).auto_capture_config?.enabled, false);
  });

  it('prefers the pending config and reads legacy served_models', () => {
    const form = fromEndpoint({
      ...endpoint,
      pending_config: {
        served_models: [{ name: 'old', entity_name: '', model_name: 'legacy', model_version: '4' }]
      }
    });
    assert.deepEqual(
      form.entities.map(e => [e.model, e.version, e.traffic]),
      [['legacy', '4', 100]]
    );
  });

  it('keeps a custom concurrency range instead of inventing a size', () => {
    const form = fromEndpoint({
      ...endpoint,
      config: {
        served_entities: [
          {
            name: 'c',
            entity_name: 'm',
            entity_version: '1',
            min_provisioned_concurrency: 4,
            max_provisioned_concurrency: 8
          }
        ]
      }
    });
    const entity = toConfig(form).served_entities[0];
    assert.equal(entity.min_provisioned_concurrency, 4);
    assert.equal('workload_size' in entity, false);
  });
});

describe('fieldOfServerError', () => {
  const form = twoEntityForm();
  const cases: Array<[string, string, string]> = [
    ['INVALID_PARAMETER_VALUE', "Endpoint name 'databricks-x' is invalid: ...", 'name'],
    ['RESOURCE_ALREADY_EXISTS', "Endpoint 'iris' already exists.", 'name'],
    [
      'INVALID_PARAMETER_VALUE',
      'served_entities[1].entity_version must be a model version number',
      'entities.1.version'
    ],
    ['INVALID_PARAMETER_VALUE', 'served_entities[0].entity_name is required', 'entities.0.model'],
    [
      'INVALID_PARAMETER_VALUE',
      "served_entities[1].workload_type 'TPU' is invalid",
      'entities.1.workloadType'
    ],
    [
      'INVALID_PARAMETER_VALUE',
      'served_entities[0]: workload_size and min/max are mutually exclusive',
      'entities.0.model'
    ],
    [
      'INVALID_PARAMETER_VALUE',
      "Served entity name 'challenger' is used more than once",
      'entities.1.name'
    ],
    [
      'INVALID_PARAMETER_VALUE',
      'The traffic_percentage values of traffic_config.routes must sum to 100',
      'traffic'
    ],
    [
      'INVALID_PARAMETER_VALUE',
      "Field 'auto_capture_config' must be a JSON object.",
      'inferenceTable'
    ],
    ['RESOURCE_DOES_NOT_EXIST', "Registered model 'nope' not found", 'form']
  ];
  for (const [code, message, field] of cases) {
    it(`puts "${message.slice(0, 40)}" at ${field}`, () => {
      assert.equal(fieldOfServerError(code, message, form), field);
    });
  }
});

describe('sortVersions', () => {
  it('sorts newest first, numerically', () => {
    assert.deepEqual(sortVersions(['1', '10', '9', '2']), ['10', '9', '2', '1']);
  });
});
