/**
 * Small presentational pieces shared by the panel's views.
 */

import * as React from 'react';

import type { Badge } from '../badge';
import type { FieldErrors } from '../form';

export function BadgeView({ badge }: { badge: Badge }): JSX.Element {
  return (
    <span
      className={`jp-serving-badge jp-serving-badge-${badge.kind}`}
      title={badge.title}
      data-badge={badge.label}
    >
      {badge.label}
    </span>
  );
}

/** A validation message under the input it belongs to; `data-field` lets tests find it. */
export function FieldError({
  errors,
  field
}: {
  errors: FieldErrors;
  field: string;
}): JSX.Element | null {
  const message = errors[field];
  return message ? (
    <div className="jp-serving-field-error" data-field={field} role="alert">
      {message}
    </div>
  ) : null;
}

export function ErrorBanner({ message }: { message: string | null }): JSX.Element | null {
  return message ? (
    <div className="jp-serving-error" role="alert">
      {message}
    </div>
  ) : null;
}

export function Button(
  props: React.ButtonHTMLAttributes<HTMLButtonElement> & { accent?: 'primary' | 'warn' }
): JSX.Element {
  const { accent, className, ...rest } = props;
  const accentClass =
    accent === 'primary' ? ' jp-mod-accept' : accent === 'warn' ? ' jp-mod-warn' : '';
  return (
    <button
      type="button"
      className={`jp-Button jp-mod-styled jp-mod-small jp-serving-button${accentClass} ${className ?? ''}`}
      {...rest}
    />
  );
}
